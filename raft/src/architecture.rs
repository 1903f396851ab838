//! How a node works inside: its tasks, the channels between them, and the
//! path of a write, a ReadIndex read and an InstallSnapshot (this module
//! holds documentation only; the text is `architecture.md` beside it).
#![doc = include_str!("architecture.md")]

#[cfg(test)]
mod tests {
    //! The page names real files, types and functions: these tests fail
    //! when one of them is renamed or moved without the page following.

    use std::path::{Path, PathBuf};

    const PAGE: &str = include_str!("architecture.md");

    fn src() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
    }

    /// The text of every Rust file under `dir`.
    fn sources(dir: &Path, out: &mut String) {
        let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                sources(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push_str(&std::fs::read_to_string(&path).expect("source file"));
                out.push('\n');
            }
        }
    }

    /// The inline code spans of the page (outside the diagram's block).
    fn code_spans() -> Vec<&'static str> {
        let mut spans = Vec::new();
        let mut in_block = false;
        for line in PAGE.lines() {
            if line.trim_start().starts_with("```") {
                in_block = !in_block;
                continue;
            }
            if in_block {
                continue;
            }
            spans.extend(line.split('`').skip(1).step_by(2));
        }
        spans
    }

    fn is_word(s: &str) -> bool {
        !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    }

    /// Whether `word` occurs in `text` as a whole identifier.
    fn has_word(text: &str, word: &str) -> bool {
        text.match_indices(word).any(|(at, _)| {
            let before = text[..at].chars().next_back();
            let after = text[at + word.len()..].chars().next();
            let ident = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
            !ident(before) && !ident(after)
        })
    }

    #[test]
    fn every_file_the_architecture_page_names_exists() {
        let mut named = 0;
        for span in code_spans() {
            if span.ends_with(".rs") || span.ends_with('/') {
                let path = src().join(span);
                assert!(path.exists(), "the architecture page names `{span}`, which is not in raft/src");
                named += 1;
            }
        }
        assert!(named >= 10, "the page names only {named} files");
    }

    #[test]
    fn every_type_and_function_the_architecture_page_names_exists() {
        let mut code = String::new();
        sources(&src(), &mut code);
        let mut checked = 0;
        for span in code_spans() {
            let segments: Vec<&str> = span.split("::").collect();
            if !segments.iter().all(|s| is_word(s)) || span.chars().all(|c| c.is_ascii_digit()) {
                continue;
            }
            let head = segments[0];
            // A type is in CamelCase; a constant, in capitals, is a word.
            if head.starts_with(|c: char| c.is_ascii_uppercase())
                && head.contains(|c: char| c.is_ascii_lowercase())
            {
                let defined = ["struct", "enum", "trait", "type"]
                    .iter()
                    .any(|kind| has_word(&code, &format!("{kind} {head}")));
                assert!(defined, "the architecture page names `{span}`, but no type `{head}` is defined");
            } else {
                assert!(
                    has_word(&code, head),
                    "the architecture page names `{span}`, which the code never mentions"
                );
            }
            for rest in &segments[1..] {
                assert!(
                    has_word(&code, rest),
                    "the architecture page names `{span}`, but `{rest}` is not in the code"
                );
            }
            checked += 1;
        }
        assert!(checked >= 50, "the page names only {checked} items");
    }
}
