#!/usr/bin/env python3
"""Mutation check: plants each bug listed in mutants/mutants.toml, one at a
time, in a throwaway copy of the repository and runs the tests expected to
catch it. See mutants/README.md.

Usage (from anywhere in the repository):

    mutants/run.py                      # every mutant, CI seed counts
    mutants/run.py --list               # list mutants and check their snippets
    mutants/run.py NAME [NAME...]       # only these mutants
    mutants/run.py --seeds-multiplier 5 # 5x the simulations' CI seed counts

Exit status: 0 if every mutant run was caught (a hang, TIMEOUT, counts as
caught), 1 if any survived, did not compile (invalid) or could not be
planted (snippet missing or ambiguous), 2 if the unmutated baseline does not
build or pass.
"""

from __future__ import annotations

import argparse
import fcntl
import fnmatch
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_LIST = HERE / "mutants.toml"

# Verdicts.
CAUGHT = "caught"
SURVIVED = "SURVIVED"
INVALID = "INVALID"  # the mutant does not compile: fix its replacement
STALE = "STALE"  # the snippet is missing or ambiguous: update the list
TIMEOUT = "TIMEOUT"  # a test ran past the time budget: inconclusive


# ----------------------------------------------------------------------------
# The mutant list


@dataclass
class Edit:
    original: str
    replacement: str


@dataclass
class Mutant:
    name: str
    rule: str
    edits: list[Edit]
    tests: list[str]
    note: str = ""


@dataclass
class Seeds:
    env: str
    default: int
    test: str  # the `cargo test --test <name>` target that reads it


@dataclass
class MutantList:
    search: list[str]
    exclude: list[str]
    default_tests: list[str]
    full_suite: str
    seeds: list[Seeds]
    mutants: list[Mutant] = field(default_factory=list)


def fail(msg: str, code: int = 2) -> None:
    print(f"mutants: {msg}", file=sys.stderr)
    sys.exit(code)


def load_list(path: Path) -> MutantList:
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        fail(f"cannot read {path}: {e}")
    d = data.get("defaults", {})
    ml = MutantList(
        search=d.get("search", ["."]),
        exclude=d.get("exclude", []),
        default_tests=d.get("tests", []),
        full_suite=d.get("full_suite", "cargo test --workspace"),
        seeds=[Seeds(s["env"], int(s["default"]), s["test"]) for s in data.get("seeds", [])],
    )
    names = set()
    for i, m in enumerate(data.get("mutant", [])):
        where = f"{path}: mutant #{i + 1}"
        for key in ("name", "rule"):
            if not isinstance(m.get(key), str) or not m[key].strip():
                fail(f"{where}: missing `{key}`")
        if m["name"] in names:
            fail(f"{where}: duplicate name {m['name']!r}")
        names.add(m["name"])
        if "original" in m:
            edits = [Edit(m["original"], m.get("replacement", ""))]
        else:
            edits = [Edit(e["original"], e.get("replacement", "")) for e in m.get("edit", [])]
        if not edits or any(not e.original.strip() for e in edits):
            fail(f"{where} ({m['name']}): needs `original`/`replacement` or [[mutant.edit]] blocks")
        tests = m.get("tests", ml.default_tests)
        if not tests:
            fail(f"{where} ({m['name']}): no test commands (set `tests` or [defaults] tests)")
        ml.mutants.append(Mutant(m["name"], m["rule"], edits, list(tests), m.get("note", "")))
    return ml


# ----------------------------------------------------------------------------
# Files and snippets


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout


def repo_files(repo: Path) -> list[str]:
    """Tracked files plus untracked, not-ignored ones (the working tree as
    it is, uncommitted edits included)."""
    out = subprocess.run(
        ["git", "-C", str(repo), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        check=True,
        capture_output=True,
    ).stdout
    files = sorted({f for f in out.decode().split("\0") if f})
    return [f for f in files if (repo / f).is_file()]


def snippet_regex(snippet: str) -> re.Pattern[str]:
    """The snippet, ignoring whitespace: any amount of whitespace (line
    breaks included) may stand between two of its characters, so
    re-indenting or re-wrapping the code (rustfmt, a moved block) does not
    lose it. Where whitespace separates two word characters it is required
    (`let x` never matches `letx`), and a snippet that starts or ends with a
    word character matches only at a word boundary (`last` does not match
    the start of `last_index`)."""
    text = snippet.strip()
    out = [r"\b" if re.match(r"\w", text) else ""]
    prev = ""
    pending_space = False
    for ch in text:
        if ch.isspace():
            pending_space = True
            continue
        if prev:
            both_words = re.match(r"\w", prev) and re.match(r"\w", ch)
            out.append(r"\s+" if pending_space and both_words else r"\s*")
        out.append(re.escape(ch))
        prev, pending_space = ch, False
    out.append(r"\b" if re.search(r"\w$", text) else "")
    return re.compile("".join(out))


def search_files(ml: MutantList, files: list[str]) -> list[str]:
    def included(f: str) -> bool:
        if not f.endswith(".rs"):
            return False
        if not any(f == s or f.startswith(s.rstrip("/") + "/") or s == "." for s in ml.search):
            return False
        return not any(fnmatch.fnmatch(f, pat) for pat in ml.exclude)

    return [f for f in files if included(f)]


@dataclass
class Location:
    file: str
    start: int
    end: int
    line: int


def locate(snippet: str, repo: Path, files: list[str], cache: dict[str, str]) -> list[Location]:
    rx = snippet_regex(snippet)
    found = []
    for f in files:
        text = cache.get(f)
        if text is None:
            text = (repo / f).read_text(errors="replace")
            cache[f] = text
        for m in rx.finditer(text):
            found.append(Location(f, m.start(), m.end(), text.count("\n", 0, m.start()) + 1))
    return found


def plan(mutant: Mutant, repo: Path, files: list[str], cache: dict[str, str]) -> tuple[dict[str, str], str]:
    """The mutated contents of every file the mutant touches, or an error.

    Edits are applied in order; each must match exactly once in the search
    tree as it stands after the previous edits."""
    changed: dict[str, str] = {}
    where = []
    for e in mutant.edits:
        view = dict(cache)
        view.update(changed)
        locs = locate(e.original, repo, files, view)
        short = " ".join(e.original.split())
        if not locs:
            return {}, f"snippet not found: `{short}`"
        if len(locs) > 1:
            at = ", ".join(f"{l.file}:{l.line}" for l in locs)
            return {}, f"snippet is ambiguous ({len(locs)} matches: {at}): `{short}`"
        loc = locs[0]
        text = view[loc.file]
        changed[loc.file] = text[: loc.start] + e.replacement + text[loc.end :]
        where.append(f"{loc.file}:{loc.line}")
    return changed, ", ".join(where)


# ----------------------------------------------------------------------------
# The throwaway copy


def sync_tree(repo: Path, tree: Path, files: list[str]) -> None:
    """Makes `tree` hold exactly `files` with the repository's contents,
    rewriting only files whose contents differ (so cargo rebuilds only what
    changed since the last run)."""
    tree.mkdir(parents=True, exist_ok=True)
    wanted = set(files)
    for f in files:
        src, dst = repo / f, tree / f
        data = src.read_bytes()
        if dst.is_file() and dst.read_bytes() == data:
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(data)
        os.chmod(dst, src.stat().st_mode & 0o777)
    for dirpath, dirnames, filenames in os.walk(tree, topdown=False):
        for name in filenames:
            rel = os.path.relpath(os.path.join(dirpath, name), tree)
            if rel not in wanted:
                os.remove(os.path.join(dirpath, name))
        if dirpath != str(tree) and not os.listdir(dirpath):
            os.rmdir(dirpath)


def write_files(tree: Path, contents: dict[str, str]) -> None:
    for f, text in contents.items():
        (tree / f).write_text(text)


# ----------------------------------------------------------------------------
# Running commands


@dataclass
class Outcome:
    ok: bool
    timed_out: bool
    seconds: float
    output: str
    compile_error: bool = False


def split_command(cmd: str) -> tuple[dict[str, str], list[str]]:
    """`VAR=value ... program args` -> (env, argv)."""
    words = shlex.split(cmd)
    env = {}
    while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):
        k, v = words.pop(0).split("=", 1)
        env[k] = v
    return env, words


def build_variant(argv: list[str]) -> list[str] | None:
    """For `cargo test ...`, the same command with `--no-run` (compile only)."""
    if len(argv) >= 2 and argv[0] == "cargo" and argv[1] == "test":
        rest = argv[2:]
        if "--" in rest:
            i = rest.index("--")
            rest = rest[:i]
        # A test-name filter is harmless with --no-run.
        return ["cargo", "test", "--no-run", *rest]
    return None


def run(argv: list[str], cwd: Path, env: dict[str, str], timeout: float | None, log) -> Outcome:
    started = time.monotonic()
    log.write(f"\n$ {shlex.join(argv)}\n")
    log.flush()
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        start_new_session=True,  # its own process group, killed as one on timeout
    )
    timed_out = False
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
    except KeyboardInterrupt:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    log.write(out)
    log.flush()
    compile_error = "error: could not compile" in out or re.search(r"^error\[E\d+\]", out, re.M) is not None
    return Outcome(proc.returncode == 0 and not timed_out, timed_out, time.monotonic() - started, out, compile_error)


def failing_tests(output: str) -> list[str]:
    """`binary::test` for every failed test in cargo's output."""
    failed = []
    binary = "?"
    for line in output.splitlines():
        m = re.match(r"\s*Running (?:unittests )?(\S+)(?: \((\S+)\))?", line)
        if m:
            # The executable, `.../deps/<target>-<hash>`, names the target.
            exe = m.group(2) or m.group(1)
            binary = re.sub(r"-[0-9a-f]{16}$", "", Path(exe).name)
            continue
        m = re.match(r"test (\S+) \.\.\. FAILED", line)
        if m:
            failed.append(f"{binary}: {m.group(1)}")
    return failed


def first_panic(output: str) -> str:
    lines = output.splitlines()
    for i, line in enumerate(lines):
        if "panicked at" in line:
            msg = lines[i + 1].strip() if i + 1 < len(lines) else ""
            return msg[:200]
    return ""


# ----------------------------------------------------------------------------
# Main


@dataclass
class Result:
    mutant: Mutant
    verdict: str
    where: str = ""
    caught_by: str = ""
    command: str = ""
    seeds: str = ""
    seconds: float = 0.0
    detail: str = ""


def seeds_for(command: str, ml: MutantList, multiplier: int) -> str:
    words = shlex.split(command)
    shown = []
    for s in ml.seeds:
        if any(w == s.test for w in words) or f"--test={s.test}" in words:
            shown.append(f"{s.env}={s.default * multiplier}")
    return ", ".join(shown) if shown else "-"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("names", nargs="*", help="run only these mutants (default: all)")
    p.add_argument("--list", action="store_true", help="list the mutants and where each snippet is; run nothing")
    p.add_argument("--file", type=Path, default=DEFAULT_LIST, help="mutant list (default: mutants/mutants.toml)")
    p.add_argument(
        "--seeds-multiplier",
        type=int,
        default=1,
        metavar="N",
        help="run the simulations at N times their CI seed counts (sets SIM_SEEDS etc.)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        help="seconds of test time allowed per mutant (default: 3x the baseline's time for the same "
        "commands + 120 s, or 1200 s x multiplier without a baseline run)",
    )
    p.add_argument(
        "--target-dir",
        type=Path,
        default=os.environ.get("MUTANTS_TARGET_DIR"),
        help="cargo target dir shared by all runs (default: $MUTANTS_TARGET_DIR or <repo>/target/mutants/target)",
    )
    p.add_argument(
        "--work-dir",
        type=Path,
        default=os.environ.get("MUTANTS_WORK_DIR"),
        help="where the throwaway copy lives (default: $MUTANTS_WORK_DIR or <repo>/target/mutants/tree)",
    )
    p.add_argument(
        "--no-baseline-tests",
        action="store_true",
        help="only check that the unmutated tree compiles, not that its tests pass",
    )
    p.add_argument(
        "--full",
        action="store_true",
        help="if a mutant survives its own commands, also run the whole suite ([defaults] full_suite)",
    )
    args = p.parse_args()
    if args.seeds_multiplier < 1:
        fail("--seeds-multiplier must be >= 1")

    repo = Path(git(HERE, "rev-parse", "--show-toplevel").strip())
    ml = load_list(args.file)
    files = repo_files(repo)
    searched = search_files(ml, files)
    cache = {f: (repo / f).read_text(errors="replace") for f in searched}

    mutants = ml.mutants
    if args.names:
        known = {m.name for m in mutants}
        unknown = [n for n in args.names if n not in known]
        if unknown:
            fail(f"unknown mutant(s): {', '.join(unknown)} (see --list)")
        mutants = [m for m in mutants if m.name in args.names]

    if args.list:
        bad = 0
        for m in mutants:
            _, where = plan(m, repo, searched, cache)
            ok = not where.startswith("snippet")
            bad += not ok
            print(f"{m.name}\n    rule:  {m.rule}\n    at:    {where if ok else 'STALE: ' + where}")
            if m.tests == ml.default_tests:
                print("    tests: the default list ([defaults] tests)")
            else:
                for t in m.tests:
                    print(f"    test:  {t}")
        print(f"\n{len(mutants)} mutants, {bad} stale")
        return 1 if bad else 0

    base = repo / "target" / "mutants"
    tree = (args.work_dir or base / "tree").resolve()
    target = (args.target_dir or base / "target").resolve()
    logs = base / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    inside_sources = repo.resolve() in tree.parents and (repo.resolve() / "target") not in tree.parents
    if tree == repo.resolve() or tree in repo.resolve().parents or inside_sources:
        fail(f"the work dir {tree} must be outside the repository's sources (e.g. under target/)")
    lock = open(base / ".lock", "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fail(f"another mutation run holds {base / '.lock'}")

    env = dict(os.environ)
    env["CARGO_TARGET_DIR"] = str(target)
    env.setdefault("CARGO_INCREMENTAL", "0")
    for s in ml.seeds:
        if args.seeds_multiplier == 1:
            # Exactly what CI runs: the tests' own defaults, whatever the
            # calling shell exported.
            env.pop(s.env, None)
        else:
            env[s.env] = str(s.default * args.seeds_multiplier)
    seed_note = ", ".join(f"{s.env}={s.default * args.seeds_multiplier}" for s in ml.seeds)
    print(f"mutants: repo {repo}\nmutants: copy {tree}, target dir {target}, logs {logs}")
    print(f"mutants: seeds x{args.seeds_multiplier} ({seed_note})")

    # Plant-ability first: a stale list is reported before any build.
    planned = {}
    results: list[Result] = []
    for m in mutants:
        changed, where = plan(m, repo, searched, cache)
        if not changed:
            results.append(Result(m, STALE, detail=where))
        else:
            planned[m.name] = (changed, where)

    sync_tree(repo, tree, files)
    commands = []
    for m in mutants:
        if m.name in planned:
            for c in m.tests:
                if c not in commands:
                    commands.append(c)

    # Baseline: the unmutated copy must build (and by default pass) every
    # command, or every mutant would look caught.
    baseline_secs: dict[str, float] = {}
    with open(logs / "baseline.log", "w") as log:
        for c in commands:
            cenv, argv = split_command(c)
            b = build_variant(argv)
            if b:
                print(f"baseline: building  {c}", flush=True)
                o = run(b, tree, {**env, **cenv}, None, log)
                if not o.ok:
                    fail(f"the unmutated tree does not build `{c}`; see {logs / 'baseline.log'}")
            if not args.no_baseline_tests:
                print(f"baseline: running   {c}", flush=True)
                o = run(argv, tree, {**env, **cenv}, None, log)
                if not o.ok:
                    failed = "; ".join(failing_tests(o.output)) or "see the log"
                    fail(f"the unmutated tree fails `{c}` ({failed}); see {logs / 'baseline.log'}")
                baseline_secs[c] = o.seconds
                print(f"baseline: passed in {o.seconds:.1f} s", flush=True)

    def budget(m: Mutant) -> float:
        if args.timeout:
            return args.timeout
        if baseline_secs and all(c in baseline_secs for c in m.tests):
            return 3 * sum(baseline_secs[c] for c in m.tests) + 120
        return 1200.0 * args.seeds_multiplier

    originals = {}
    try:
        for m in mutants:
            if m.name not in planned:
                continue
            changed, where = planned[m.name]
            print(f"\n== {m.name} ({where})\n   {m.rule}", flush=True)
            originals = {f: (repo / f).read_text(errors="replace") for f in changed}
            write_files(tree, changed)
            res = Result(m, SURVIVED, where=where)
            commands_m = list(m.tests)
            if args.full and ml.full_suite not in commands_m:
                commands_m.append(ml.full_suite)
            left = budget(m)
            with open(logs / f"{m.name}.log", "w") as log:
                for i, c in enumerate(commands_m):
                    cenv, argv = split_command(c)
                    b = build_variant(argv)
                    if b:
                        o = run(b, tree, {**env, **cenv}, None, log)
                        if not o.ok:
                            res.verdict = INVALID
                            res.detail = "does not compile" if o.compile_error else "build failed"
                            res.command = c
                            break
                    # The full suite, added by --full, gets its own budget.
                    limit = max(left, 60.0) if i < len(m.tests) else 1200.0 * args.seeds_multiplier
                    o = run(argv, tree, {**env, **cenv}, limit, log)
                    res.seconds += o.seconds
                    if i < len(m.tests):
                        left -= o.seconds
                    if o.timed_out:
                        # Tests that failed before the hang still caught it.
                        failed = failing_tests(o.output)
                        hung = re.findall(r"^test (\S+) has been running for over", o.output, re.M)
                        res.verdict = CAUGHT if failed else TIMEOUT
                        res.command, res.caught_by = c, "; ".join(failed)
                        res.seeds = seeds_for(c, ml, args.seeds_multiplier)
                        res.detail = f"killed after {limit:.0f} s" + (f"; still running: {', '.join(hung)}" if hung else "")
                        break
                    if not o.ok:
                        if o.compile_error:
                            res.verdict, res.command, res.detail = INVALID, c, "does not compile"
                            break
                        res.verdict, res.command = CAUGHT, c
                        res.caught_by = "; ".join(failing_tests(o.output)) or "(exit status, no test named)"
                        res.seeds = seeds_for(c, ml, args.seeds_multiplier)
                        res.detail = first_panic(o.output)
                        break
            if res.verdict == SURVIVED:
                # Every command passed: report every seed count it faced.
                used = [seeds_for(c, ml, args.seeds_multiplier) for c in commands_m]
                res.seeds = ", ".join(u for u in used if u != "-") or "-"
            write_files(tree, originals)
            originals = {}
            print(f"   -> {res.verdict}{': ' + res.caught_by if res.caught_by else ''}"
                  f"{' (' + res.detail + ')' if res.detail else ''} [{res.seconds:.0f} s]", flush=True)
            results.append(res)
    finally:
        # Never leave a mutant planted in the copy.
        if originals:
            write_files(tree, originals)

    order = {m.name: i for i, m in enumerate(mutants)}
    results.sort(key=lambda r: order[r.mutant.name])
    print_summary(results, args.seeds_multiplier, base / "last-run.md")
    # A hang fails CI too: TIMEOUT counts as caught for the exit status.
    return 0 if all(r.verdict in (CAUGHT, TIMEOUT) for r in results) else 1


def print_summary(results: list[Result], multiplier: int, md_path: Path) -> None:
    rows = []
    for r in results:
        by = r.caught_by or r.detail or "-"
        if r.verdict != CAUGHT and r.command:
            by = f"{r.detail} ({r.command})"
        rows.append((r.mutant.name, r.mutant.rule, r.verdict, by, r.seeds or "-"))
    head = ("mutant", "rule", "verdict", "caught by", "seeds")
    widths = [max(len(h), *(min(len(row[i]), 70) for row in rows)) if rows else len(h) for i, h in enumerate(head)]

    def cell(s: str, w: int) -> str:
        return (s if len(s) <= w else s[: w - 1] + "…").ljust(w)

    print(f"\nSummary (seeds x{multiplier}):")
    print("  ".join(cell(h, w) for h, w in zip(head, widths)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(cell(s, w) for s, w in zip(row, widths)))
    counts: dict[str, int] = {}
    for r in results:
        counts[r.verdict] = counts.get(r.verdict, 0) + 1
    print("\n" + ", ".join(f"{n} {v}" for v, n in sorted(counts.items())))
    with open(md_path, "w") as f:
        md_head = (*head, "where", "detail")
        f.write(f"Seeds x{multiplier}.\n\n| {' | '.join(md_head)} |\n|{'---|' * len(md_head)}\n")
        for r, row in zip(results, rows):
            cells = (*row, r.where or "-", r.detail or "-")
            f.write("| " + " | ".join(s.replace("|", "\\|") for s in cells) + " |\n")
    print(f"(also written to {md_path})")


if __name__ == "__main__":
    sys.exit(main())
