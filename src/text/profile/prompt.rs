//! RLMRec-style prompts (RLMRec section 3.2, SPEC section 1): an item prompt asks which
//! kind of user would enjoy the item; a user prompt lists the user's *training* items
//! (never validation or test) with their item profiles and asks which items the user
//! enjoys. Both ask for a JSON object `{"summarization": ..., "reasoning": ...}`.
//! Also: the deterministic choice of a user's listed items, the prompt hash and the
//! parsing of model answers.

use super::template::Describer;
use crate::rng::Rng;
use sha2::{Digest, Sha256};

/// A system + user prompt pair.
#[derive(Clone, Debug, PartialEq)]
pub struct Prompt {
    pub system: String,
    pub user: String,
}

/// System prompt of item profiles (RLMRec's item instruction, shortened so that small
/// local models follow it too).
pub fn item_system(noun: &str) -> String {
    format!(
        "You are a {noun} expert. Given a {noun}, summarize what types of users would enjoy it. \
Reply only with a JSON object: {{\"summarization\": \"<what types of users would enjoy this \
{noun}, under 100 words>\", \"reasoning\": \"<briefly, why>\"}}"
    )
}

/// System prompt of user profiles (RLMRec's user instruction, shortened likewise).
pub fn user_system(noun: &str) -> String {
    format!(
        "You are a {noun} expert. Given a user's demographics (when known) and {noun}s the user \
liked, each with a description of who enjoys it, summarize what types of {noun}s this user is \
likely to enjoy. Reply only with a JSON object: {{\"summarization\": \"<what types of {noun}s \
this user is likely to enjoy, under 100 words>\", \"reasoning\": \"<briefly, why>\"}}"
    )
}

/// Item prompt: title, year, genres and other columns of item `i`.
pub fn item_prompt(d: &Describer, i: u32, external_id: &str) -> Prompt {
    let m = d.item(i);
    let mut lines = Vec::new();
    match &m.title {
        Some(t) => lines.push(format!("Title: {t}")),
        None => lines.push(format!("Id: {external_id}")),
    }
    if let Some(y) = &m.year {
        lines.push(format!("Year: {y}"));
    }
    if !m.genres.is_empty() {
        lines.push(format!("Genres: {}", m.genres.join(", ")));
    }
    for (c, v) in &m.extra {
        lines.push(format!("{}: {v}", c.replace('_', " ")));
    }
    Prompt {
        system: item_system(d.noun),
        user: lines.join("\n"),
    }
}

/// User prompt: demographics (when present) and the listed training items, each with its
/// item profile text (`item_text(i)`).
pub fn user_prompt(
    d: &Describer,
    u: u32,
    items: &[u32],
    item_text: &dyn Fn(u32) -> String,
) -> Prompt {
    let mut s = String::new();
    let demo = d.user_demographics(u, false);
    if !demo.is_empty() {
        s.push_str(&format!("Demographics: {}.\n", demo.join(", ")));
    }
    if items.is_empty() {
        s.push_str(&format!("The user has not liked any {} yet.", d.noun));
    } else {
        s.push_str(&format!("{}s the user liked:\n", capitalise(d.noun)));
        for (k, &i) in items.iter().enumerate() {
            s.push_str(&format!(
                "{}. {}: {}\n",
                k + 1,
                d.item_label(i),
                item_text(i).trim()
            ));
        }
        s.pop();
    }
    Prompt {
        system: user_system(d.noun),
        user: s,
    }
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// The training items listed for a user: all of `train_row` when it has at most `cap`
/// items, else `cap` of them drawn without replacement by a generator derived from `seed`
/// and the user's external id (so users do not shift each other's draws). Sorted by
/// internal id.
pub fn select_user_items(train_row: &[u32], cap: usize, seed: u64, user_ext: &str) -> Vec<u32> {
    if train_row.len() <= cap {
        return train_row.to_vec();
    }
    let mut rng = Rng::derive(seed, &format!("profile-user:{user_ext}"));
    let mut picked: Vec<u32> = rng
        .sample_distinct(train_row.len(), cap)
        .into_iter()
        .map(|k| train_row[k])
        .collect();
    picked.sort_unstable();
    picked
}

/// Lower-case hex sha256 of the system prompt, user prompt, model name and generation
/// settings (separated by U+001E so no two different inputs collide by concatenation).
pub fn prompt_hash(system: &str, user: &str, model: &str, settings: &str) -> String {
    let mut h = Sha256::new();
    for (k, part) in [system, user, model, settings].iter().enumerate() {
        if k > 0 {
            h.update([0x1e]);
        }
        h.update(part.as_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The `summarization` of a model answer: the first JSON object in the text holding a
/// non-empty string `summarization` (code fences and surrounding chatter are ignored);
/// failing that, a `"summarization": "..."` pair whose string is closed (small models
/// often break the JSON elsewhere). `None` when neither is found or the value is `None`.
pub fn parse_summarization(answer: &str) -> Option<String> {
    let accept = |s: &str| {
        let s = s.trim();
        (!s.is_empty() && !s.eq_ignore_ascii_case("none")).then(|| s.to_string())
    };
    for (pos, _) in answer.match_indices('{') {
        let mut de =
            serde_json::Deserializer::from_str(&answer[pos..]).into_iter::<serde_json::Value>();
        if let Some(Ok(serde_json::Value::Object(map))) = de.next() {
            if let Some(serde_json::Value::String(s)) = map.get("summarization") {
                if let Some(s) = accept(s) {
                    return Some(s);
                }
            }
        }
    }
    // Lenient: "summarization" : "....." with the closing quote present.
    let key = answer.find("\"summarization\"")?;
    let rest = answer[key + "\"summarization\"".len()..].trim_start();
    let rest = rest.strip_prefix(':')?.trim_start();
    let rest = rest.strip_prefix('"')?;
    let mut out = String::new();
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return accept(&out),
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                other => out.push(other),
            },
            c => out.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_sha256_hex() {
        // sha256("a\x1eb\x1ec\x1ed") computed with Python's hashlib.
        assert_eq!(
            prompt_hash("a", "b", "c", "d"),
            "f310264384cb6cf28d2449ffc920bda9866f021c34cc5b993a533236780601ed"
        );
        assert_ne!(
            prompt_hash("ab", "", "c", "d"),
            prompt_hash("a", "b", "c", "d")
        );
    }

    #[test]
    fn parses_answers() {
        let ok = "Sure!\n```json\n{\"summarization\": \"Families.\", \"reasoning\": \"x\"}\n```";
        assert_eq!(parse_summarization(ok).as_deref(), Some("Families."));
        let broken = "{\"summarization\": \"Fans of \\\"noir\\\".\", \"reasoning\": \"unterminated";
        assert_eq!(
            parse_summarization(broken).as_deref(),
            Some("Fans of \"noir\".")
        );
        assert_eq!(parse_summarization("{\"summarization\": \"None\"}"), None);
        assert_eq!(parse_summarization("{\"summarization\": \"cut off"), None);
        assert_eq!(parse_summarization("I like movies."), None);
        assert_eq!(parse_summarization("{\"reasoning\": \"r\"}"), None);
    }

    #[test]
    fn selection_is_capped_deterministic_and_sorted() {
        let row: Vec<u32> = (0..50).map(|x| x * 2).collect();
        assert_eq!(select_user_items(&row[..5], 20, 1, "u"), row[..5].to_vec());
        let a = select_user_items(&row, 20, 7, "u1");
        assert_eq!(a.len(), 20);
        assert!(a.windows(2).all(|w| w[0] < w[1]));
        assert!(a.iter().all(|x| row.contains(x)));
        assert_eq!(a, select_user_items(&row, 20, 7, "u1"));
        assert_ne!(a, select_user_items(&row, 20, 8, "u1"));
    }
}
