//! Optimal one-to-one assignment (Kuhn-Munkres / Hungarian method with potentials, O(n^3)),
//! used to match DaRec's collaborative preference centres to the language-side centres by
//! maximal total cosine similarity (SPEC.md section 1.5).

/// For a square `n x n` cost matrix (row-major), the column assigned to each row so that
/// the total cost is minimal. Terminates on any input: a NaN or infinite cost is taken as
/// larger than every finite one (a NaN would otherwise never compare below the running
/// minimum and the search for a free column would never end).
pub fn min_cost_assignment(cost: &[f64], n: usize) -> Vec<usize> {
    assert_eq!(cost.len(), n * n);
    if n == 0 {
        return Vec::new();
    }
    let finite_max = cost
        .iter()
        .filter(|c| c.is_finite())
        .fold(0f64, |m, c| m.max(c.abs()));
    // every replacement cost exceeds any sum of finite costs, and stays finite
    let worst = (finite_max + 1.0) * (n as f64 + 1.0);
    let cleaned: Vec<f64>;
    let cost = if cost.iter().all(|c| c.is_finite()) {
        cost
    } else {
        cleaned = cost
            .iter()
            .map(|&c| if c.is_finite() { c } else { worst })
            .collect();
        &cleaned
    };
    let inf = f64::INFINITY;
    // 1-based arrays as in the classic formulation; p[j] = row matched to column j.
    let (mut u, mut v) = (vec![0.0; n + 1], vec![0.0; n + 1]);
    let (mut p, mut way) = (vec![0usize; n + 1], vec![0usize; n + 1]);
    for i in 1..=n {
        p[0] = i;
        let mut j0 = 0;
        let mut minv = vec![inf; n + 1];
        let mut used = vec![false; n + 1];
        loop {
            used[j0] = true;
            let i0 = p[j0];
            let mut delta = inf;
            let mut j1 = 0;
            for j in 1..=n {
                if !used[j] {
                    let cur = cost[(i0 - 1) * n + (j - 1)] - u[i0] - v[j];
                    if cur < minv[j] {
                        minv[j] = cur;
                        way[j] = j0;
                    }
                    if minv[j] < delta {
                        delta = minv[j];
                        j1 = j;
                    }
                }
            }
            for j in 0..=n {
                if used[j] {
                    u[p[j]] += delta;
                    v[j] -= delta;
                } else {
                    minv[j] -= delta;
                }
            }
            j0 = j1;
            if p[j0] == 0 {
                break;
            }
        }
        loop {
            let j1 = way[j0];
            p[j0] = p[j1];
            j0 = j1;
            if j0 == 0 {
                break;
            }
        }
    }
    let mut assign = vec![0usize; n];
    for j in 1..=n {
        if p[j] > 0 {
            assign[p[j] - 1] = j - 1;
        }
    }
    assign
}

/// The assignment maximising the total of `score` (e.g. cosine similarities).
pub fn max_score_assignment(score: &[f64], n: usize) -> Vec<usize> {
    let neg: Vec<f64> = score.iter().map(|s| -s).collect();
    min_cost_assignment(&neg, n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn brute_force_best(cost: &[f64], n: usize) -> f64 {
        fn rec(cost: &[f64], n: usize, row: usize, used: &mut Vec<bool>, acc: f64, best: &mut f64) {
            if row == n {
                *best = best.min(acc);
                return;
            }
            for c in 0..n {
                if !used[c] {
                    used[c] = true;
                    rec(cost, n, row + 1, used, acc + cost[row * n + c], best);
                    used[c] = false;
                }
            }
        }
        let mut best = f64::INFINITY;
        rec(cost, n, 0, &mut vec![false; n], 0.0, &mut best);
        best
    }

    #[test]
    fn hand_example() {
        // classic 3x3: optimum 0->1, 1->0, 2->2 with cost 2+3+2... check by hand:
        // cost = [[4,1,3],[2,0,5],[3,2,2]]: best = 1 (0->1) + 2 (1->0) + 2 (2->2) = 5
        let cost = [4.0, 1.0, 3.0, 2.0, 0.0, 5.0, 3.0, 2.0, 2.0];
        assert_eq!(min_cost_assignment(&cost, 3), vec![1, 0, 2]);
    }

    #[test]
    fn matches_brute_force_on_random_matrices_and_is_a_permutation() {
        let mut rng = Rng::new(9);
        for n in 1..=7 {
            for _ in 0..20 {
                let cost: Vec<f64> = (0..n * n).map(|_| rng.f64() * 10.0 - 5.0).collect();
                let a = min_cost_assignment(&cost, n);
                let mut seen = a.clone();
                seen.sort();
                assert_eq!(seen, (0..n).collect::<Vec<_>>());
                let total: f64 = a.iter().enumerate().map(|(r, &c)| cost[r * n + c]).sum();
                assert!((total - brute_force_best(&cost, n)).abs() < 1e-9);
            }
        }
        let score = [0.9, 0.1, 0.2, 0.8];
        assert_eq!(max_score_assignment(&score, 2), vec![0, 1]);
    }

    #[test]
    fn non_finite_costs_terminate_with_a_permutation_avoiding_them() {
        // NaN used to hang the search for a free column (issue 16)
        let nan = f64::NAN;
        let cost = [nan, 1.0, 2.0, nan];
        assert_eq!(min_cost_assignment(&cost, 2), vec![1, 0]);
        let cost = [f64::INFINITY, 0.0, f64::NEG_INFINITY, 5.0];
        assert_eq!(min_cost_assignment(&cost, 2), vec![1, 0]);
        for n in 1..=6 {
            let all_nan = vec![nan; n * n];
            let mut a = max_score_assignment(&all_nan, n);
            a.sort();
            assert_eq!(a, (0..n).collect::<Vec<_>>());
        }
    }
}
