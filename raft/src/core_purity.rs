//! The purity check of the protocol core: every file under `src/core/`
//! is read at test time and must not name tokio, `std::time`, `std::fs`,
//! `std::net` or the runtime (`crate::runtime`, `super::super::runtime`,
//! ...), whether through a `use` (grouped or not) or a fully qualified path.
//! Comments and string literals are ignored. This file lives outside
//! `src/core/` because it spells the forbidden names.

use std::path::{Path, PathBuf};

/// Modules of `std` the core must not touch (clocks, files, sockets).
const FORBIDDEN_STD: &[&str] = &["time", "fs", "net"];

/// A token of Rust source that matters for paths.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Ident(String),
    PathSep,
    Open,
    Close,
    Comma,
    Other,
}

/// Tokenizes `src`, dropping comments, string and character literals.
fn tokens(src: &str) -> Vec<Token> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if c == 'r' && matches!(next, Some('"') | Some('#')) && raw_string_end(&chars, i).is_some() {
            i = raw_string_end(&chars, i).unwrap_or(chars.len());
            out.push(Token::Other);
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push(Token::Other);
        } else if c == '\'' && char_literal_end(&chars, i).is_some() {
            i = char_literal_end(&chars, i).unwrap_or(chars.len());
            out.push(Token::Other);
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            // `r#ident` is the identifier itself.
            if word == "r" && chars.get(i) == Some(&'#') {
                i += 1;
                continue;
            }
            out.push(Token::Ident(word));
        } else if c == ':' && next == Some(':') {
            out.push(Token::PathSep);
            i += 2;
        } else {
            out.push(match c {
                '{' => Token::Open,
                '}' => Token::Close,
                ',' => Token::Comma,
                c if c.is_whitespace() => {
                    i += 1;
                    continue;
                }
                _ => Token::Other,
            });
            i += 1;
        }
    }
    out
}

/// Where a raw string literal starting at `i` (`r"..."`, `r#"..."#`) ends.
fn raw_string_end(chars: &[char], i: usize) -> Option<usize> {
    let mut j = i + 1;
    let mut hashes = 0;
    while chars.get(j) == Some(&'#') {
        hashes += 1;
        j += 1;
    }
    if chars.get(j) != Some(&'"') {
        return None;
    }
    j += 1;
    while j < chars.len() {
        if chars[j] == '"' && (0..hashes).all(|k| chars.get(j + 1 + k) == Some(&'#')) {
            return Some(j + 1 + hashes);
        }
        j += 1;
    }
    Some(chars.len())
}

/// Where a character literal starting at `i` ends (`None`: a lifetime).
fn char_literal_end(chars: &[char], i: usize) -> Option<usize> {
    match chars.get(i + 1)? {
        '\\' => (i + 2..chars.len().min(i + 12)).find(|&j| chars[j] == '\'').map(|j| j + 1),
        _ if chars.get(i + 2) == Some(&'\'') => Some(i + 3),
        _ => None,
    }
}

/// Expands the path (or `use` tree) starting at token `i` under `prefix`:
/// `a::b::{c, d::{e}}` gives `a::b::c` and `a::b::d::e`. Returns the paths
/// and the index of the first token after it.
fn expand(toks: &[Token], mut i: usize, mut prefix: Vec<String>) -> (Vec<Vec<String>>, usize) {
    let mut paths = Vec::new();
    loop {
        match toks.get(i) {
            Some(Token::Ident(name)) => {
                prefix.push(name.clone());
                i += 1;
            }
            Some(Token::Open) => {
                // A group: each element is a tree under the same prefix.
                i += 1;
                loop {
                    match toks.get(i) {
                        Some(Token::Close) => return (paths, i + 1),
                        Some(Token::Comma) => i += 1,
                        None => return (paths, i),
                        Some(_) => {
                            let (inner, next) = expand(toks, i, prefix.clone());
                            paths.extend(inner);
                            // Skip anything the tree did not consume (`as x`,
                            // `*`) up to the next element.
                            i = next;
                            while !matches!(toks.get(i), Some(Token::Comma | Token::Close) | None) {
                                i += 1;
                            }
                        }
                    }
                }
            }
            _ => {
                paths.push(prefix);
                return (paths, i);
            }
        }
        if toks.get(i) == Some(&Token::PathSep) {
            i += 1;
        } else {
            paths.push(prefix);
            return (paths, i);
        }
    }
}

/// Why `path` breaks the core's purity, if it does.
fn forbidden(path: &[String]) -> Option<String> {
    let shown = path.join("::");
    if path.iter().any(|s| s == "tokio") {
        return Some(format!("`{shown}` uses tokio"));
    }
    if path.first().is_some_and(|s| s == "std") {
        if let Some(module) = path.get(1).filter(|m| FORBIDDEN_STD.contains(&m.as_str())) {
            return Some(format!("`{shown}` uses std::{module}"));
        }
    }
    let rooted = path.first().is_some_and(|s| matches!(s.as_str(), "crate" | "super" | "self"));
    let names_runtime =
        path.iter().position(|s| s == "runtime").is_some_and(|at| at + 1 < path.len() || rooted);
    if names_runtime {
        return Some(format!("`{shown}` uses the runtime"));
    }
    None
}

/// Every breach of purity in `src`, as descriptions.
fn violations(src: &str) -> Vec<String> {
    let toks = tokens(src);
    let mut found = Vec::new();
    for (i, tok) in toks.iter().enumerate() {
        if let Token::Ident(name) = tok {
            if name == "tokio" {
                found.push("names tokio".to_owned());
                continue;
            }
        }
        // A path starts at an identifier not preceded by `::`, or at a
        // leading `::` (an absolute path such as `::std::fs`).
        let starts = match tok {
            Token::Ident(_) => i == 0 || toks[i - 1] != Token::PathSep,
            Token::PathSep => i == 0 || !matches!(toks[i - 1], Token::Ident(_) | Token::PathSep),
            _ => false,
        };
        if !starts {
            continue;
        }
        let from = if *tok == Token::PathSep { i + 1 } else { i };
        let (paths, _) = expand(&toks, from, Vec::new());
        found.extend(paths.iter().filter_map(|p| forbidden(p)));
    }
    found
}

/// The Rust files under `dir`, recursively.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

#[test]
fn the_core_uses_no_tokio_clock_files_sockets_or_runtime() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join("core");
    let files = rust_files(&dir);
    assert!(files.len() >= 10, "expected the core's files under {}, found {files:?}", dir.display());
    let mut breaches = Vec::new();
    for file in files {
        let src =
            std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
        for v in violations(&src) {
            breaches.push(format!("{}: {v}", file.display()));
        }
    }
    assert!(breaches.is_empty(), "the protocol core must stay pure:\n{}", breaches.join("\n"));
}

#[test]
fn the_purity_check_catches_uses_and_qualified_paths() {
    let breaking = [
        "use tokio::sync::mpsc;",
        "fn f() { let _ = tokio::time::sleep; }",
        "use std::time::Instant;",
        "fn f() { let t = std::time::Instant::now(); }",
        "fn f() { let t = ::std::time::Instant::now(); }",
        "use std::{collections::HashMap, fs};",
        "use std::{collections::{BTreeMap}, net::{TcpStream, UdpSocket}};",
        "use std::fs as files;",
        "fn f() { std :: fs :: read(\"x\"); }",
        "use crate::runtime::node::Node;",
        "use crate::runtime;",
        "use crate::{types::Log, runtime::writer};",
        "fn f() { super::super::runtime::peer::spawn(); }",
        "use super::super::{runtime};",
        "fn f() -> crate::runtime::Applied { todo() }",
    ];
    for src in breaking {
        assert!(!violations(src).is_empty(), "not caught: {src}");
    }
    let fine = [
        "// tokio, std::time and crate::runtime in a comment\nuse std::collections::BTreeMap;",
        "/* std::fs */ fn f() { tracing::info!(\"uses std::time and tokio\"); }",
        "fn f() { let s = r#\"crate::runtime::x\"#; let c = '\"'; let runtime = 1; }",
        "use crate::types::{Log, LogType};",
        "fn f<'a>(x: &'a str) -> std::collections::VecDeque<&'a str> { todo() }",
        "use std::{collections::HashMap, fmt};",
    ];
    for src in fine {
        assert_eq!(violations(src), Vec::<String>::new(), "false alarm: {src}");
    }
}
