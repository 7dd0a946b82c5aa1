//! The comparison table: mean ± std per variant, the change against the reference, and
//! unpaired and paired (same-seed) differences tested against twice their standard error.

use super::RunRecord;
use crate::report::{mean_std, short};

/// The comparison table: mean ± std of the six main metrics per variant, the relative
/// change of each mean against the reference, time per epoch and peak memory, and whether
/// the difference in `metric` is larger than twice its standard error.
pub fn compare_table(
    records: &[RunRecord],
    names: &[String],
    reference: &str,
    metric: &str,
    contrasts: &[[String; 2]],
) -> String {
    let keys = crate::report::MAIN_KEYS;
    let values = |name: &str, key: &str| -> Vec<f64> {
        records
            .iter()
            .filter(|r| r.variant == name)
            .filter_map(|r| r.test.get(key))
            .collect()
    };
    let mut s = String::from("| variant | seeds |");
    for k in keys {
        s.push_str(&format!(" {} |", short(k)));
    }
    s.push_str(" s/epoch | peak MiB |\n|---|---|");
    s.push_str(&"---|".repeat(keys.len() + 2));
    s.push('\n');
    for name in names {
        let n = records.iter().filter(|r| &r.variant == name).count();
        s.push_str(&format!("| {name} | {n} |"));
        for k in keys {
            let (m, sd) = mean_std(&values(name, k));
            let (rm, _) = mean_std(&values(reference, k));
            let rel = if name != reference && rm > 0.0 {
                format!(" ({:+.1}%)", 100.0 * (m - rm) / rm)
            } else {
                String::new()
            };
            s.push_str(&format!(" {m:.4} ± {sd:.4}{rel} |"));
        }
        let ep: Vec<f64> = records
            .iter()
            .filter(|r| &r.variant == name)
            .filter_map(|r| r.epoch_seconds)
            .collect();
        let mem: Vec<f64> = records
            .iter()
            .filter(|r| &r.variant == name)
            .filter_map(|r| r.peak_rss_mib)
            .collect();
        s.push_str(&format!(
            " {:.2} | {:.0} |\n",
            mean_std(&ep).0,
            mem.iter().cloned().fold(f64::NAN, f64::max)
        ));
    }
    s.push_str(&format!(
        "\nTest metrics, mean ± sample standard deviation over seeds; (±x%) is the change of the mean against `{reference}`.\n\n"
    ));
    s.push_str(&format!(
        "| comparison | Δ {m} | standard error | beyond 2 SE? | paired seeds | paired Δ {m} ± SE | beyond 2 SE (paired)? |\n|---|---|---|---|---|---|---|\n",
        m = short(metric)
    ));
    let verdict = |n: usize, diff: f64, se: f64| {
        if n < 2 {
            "n/a (needs 2+ seeds)"
        } else if diff.abs() > 2.0 * se {
            "yes"
        } else {
            "no"
        }
    };
    let pairs = names
        .iter()
        .filter(|n| n.as_str() != reference)
        .map(|n| [n.clone(), reference.to_string()])
        .chain(contrasts.iter().cloned());
    for [a, b] in pairs {
        let (xa, xb) = (values(&a, metric), values(&b, metric));
        if xa.is_empty() || xb.is_empty() {
            continue; // a variant with no finished run yet (`--table-only`)
        }
        let ((ma, sa), (mb, sb)) = (mean_std(&xa), mean_std(&xb));
        let (na, nb) = (xa.len(), xb.len());
        let se = (sa * sa / na as f64 + sb * sb / nb as f64).sqrt();
        let diff = ma - mb;
        let d = paired_differences(records, &a, &b, metric);
        let (md, sd) = mean_std(&d);
        let pse = sd / (d.len().max(1) as f64).sqrt();
        let paired = if d.is_empty() {
            "—".to_string()
        } else {
            format!("{md:+.4} ± {pse:.4}")
        };
        s.push_str(&format!(
            "| {a} vs {b} | {diff:+.4} | {se:.4} | {} | {} | {paired} | {} |\n",
            verdict(na.min(nb), diff, se),
            d.len(),
            verdict(d.len(), md, pse),
        ));
    }
    s.push_str(
        "\nPaired: differences between runs with the same seed (same initial embeddings and \
         the same sampled triples), which removes the variation the seeds share.\n",
    );
    s
}

/// `metric(a) - metric(b)` for every seed both variants ran, in seed order.
fn paired_differences(records: &[RunRecord], a: &str, b: &str, metric: &str) -> Vec<f64> {
    let mut d: Vec<(u64, f64)> = records
        .iter()
        .filter(|r| r.variant == a)
        .filter_map(|ra| {
            let rb = records
                .iter()
                .find(|r| r.variant == b && r.seed == ra.seed)?;
            Some((ra.seed, ra.test.get(metric)? - rb.test.get(metric)?))
        })
        .collect();
    d.sort_by_key(|x| x.0);
    d.into_iter().map(|x| x.1).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::Metrics;
    use std::path::PathBuf;

    #[test]
    fn compare_table_relative_change_and_significance() {
        let m = |r: f64| Metrics {
            n_users: 1,
            values: crate::report::MAIN_KEYS
                .iter()
                .map(|k| (k.to_string(), r))
                .collect(),
            ..Default::default()
        };
        let rec = |v: &str, seed: u64, r: f64| RunRecord {
            variant: v.into(),
            seed,
            dir: PathBuf::new(),
            valid: m(r),
            test: m(r),
            epoch_seconds: Some(1.0),
            peak_rss_mib: Some(100.0),
            best_epoch: Some(3),
        };
        let records = vec![
            rec("base", 1, 0.10),
            rec("base", 2, 0.12),
            rec("new", 1, 0.20),
            rec("new", 2, 0.22),
        ];
        let t = compare_table(
            &records,
            &["base".into(), "new".into()],
            "base",
            "recall@20",
            &[["base".into(), "new".into()]],
        );
        // new mean 0.21 vs 0.11: +90.9%; paired differences 0.10 and 0.10: no spread
        assert!(t.contains("0.2100 ± 0.0141 (+90.9%)"), "{t}");
        assert!(
            t.contains("| new vs base | +0.1000 | 0.0141 | yes | 2 | +0.1000 ± 0.0000 | yes |"),
            "{t}"
        );
        assert!(
            t.contains("| base vs new | -0.1000 | 0.0141 | yes | 2 |"),
            "{t}"
        );
        // one seed has no spread to compare with
        let single = compare_table(
            &records[..3],
            &["base".into(), "new".into()],
            "base",
            "recall@20",
            &[],
        );
        assert!(single.contains("n/a (needs 2+ seeds)"), "{single}");
        // pairing removes the shared seed effect: unpaired within 2 SE, paired beyond
        let records = vec![
            rec("base", 1, 0.100),
            rec("base", 2, 0.120),
            rec("base", 3, 0.140),
            rec("new", 1, 0.101),
            rec("new", 2, 0.122),
            rec("new", 3, 0.142),
            rec("new", 4, 0.500),
        ];
        let t = compare_table(
            &records,
            &["base".into(), "new".into()],
            "base",
            "recall@20",
            &[],
        );
        // paired differences 0.001, 0.002, 0.002 (seed 4 has no partner): mean 0.00167,
        // sd 0.000577, SE 0.000333
        assert!(t.contains("| no | 3 | +0.0017 ± 0.0003 | yes |"), "{t}");
    }
}
