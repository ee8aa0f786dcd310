"""How long the `intake` command takes to start: `intake --help` and `intake list` on an empty
database, beside references that bound them, in interleaved rounds.

    .venv/bin/python bench/cli_startup.py                 # 15 rounds
    .venv/bin/python bench/cli_startup.py --rounds 30 --imports
    .venv/bin/python bench/cli_startup.py --baseline /tmp/old   # an older tree, same run
    .venv/bin/python bench/cli_startup.py --postgresql postgresql://postgres@127.0.0.1:5432/test

`--postgresql URL` adds `intake list` on an empty PostgreSQL schema created there (and dropped
after); it pays for importing psycopg, which SQLite does not need. `--baseline DIR` adds both commands run from another source tree (DIR holding `intake/` and
`intake_migrations/`, e.g. `git archive REV intake migrations | tar -x -C DIR` and renaming
`migrations` to `intake_migrations`) with this environment's packages, for a before/after
measured in the same rounds.

Each round runs every command once as a fresh process (the console script `intake`, as a user
types it), so a busy machine slows all of them alike; the figures are medians of wall time, with
the CPU time (user + system) beside them. References: `python -c pass` (the interpreter), a
minimal click CLI's --help, a sqlite3 SELECT script (what listing an empty table costs without
intake), and `import sqlalchemy.orm` (the floor of any command that reads intake's database
through its models).

Bytecode is written (PYTHONDONTWRITEBYTECODE is removed for the runs, and a warm-up round
compiles intake's modules), as on a user's machine after the first run. `--imports` prints the
slowest imports of each intake command from `python -X importtime`.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

INTAKE = str(Path(sys.executable).parent / "intake")

MINIMAL_CLICK = """
import click

@click.group()
def cli():
    "A minimal click CLI."

@cli.command()
def hello():
    "Say hello."

cli(["--help"])
"""

SQLITE_SELECT = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1])
rows = conn.execute("SELECT id, status, category, subject FROM inquiries ORDER BY received_at DESC LIMIT 50").fetchall()
print(rows or "no inquiries")
"""


def from_tree(tree: Path, db_path: Path, *args: str) -> list[str]:
    """`intake ARGS` run from another source tree, ahead of the installed one on sys.path, on
    its own database (its migrations may be older than this tree's)."""
    code = (f"import os, sys; os.environ['DATABASE_URL'] = {f'sqlite:///{db_path}'!r}; "
            f"sys.path.insert(0, {str(tree)!r}); from intake.cli import main; main(sys.argv[1:])")
    return [sys.executable, "-c", code, *args]


def commands(db_path: Path, baseline: Path | None, pg_url: str | None) -> dict[str, list[str]]:
    before = {} if baseline is None else {
        "baseline: intake --help": from_tree(baseline, db_path.with_name("baseline.db"), "--help"),
        "baseline: intake list": from_tree(baseline, db_path.with_name("baseline.db"), "list"),
    }
    postgresql = {} if pg_url is None else {
        "intake list (empty PostgreSQL)": ["env", f"DATABASE_URL={pg_url}", INTAKE, "list"],
    }
    return {
        "intake --help": [INTAKE, "--help"],
        "intake list (empty database)": [INTAKE, "list"],
        **postgresql,
        **before,
        "ref: python -c pass": [sys.executable, "-c", "pass"],
        "ref: minimal click CLI --help": [sys.executable, "-c", MINIMAL_CLICK],
        "ref: sqlite3 SELECT script": [sys.executable, "-c", SQLITE_SELECT, str(db_path)],
        "ref: import sqlalchemy.orm": [sys.executable, "-c", "import sqlalchemy.orm"],
    }


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the child) for one run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:2])} failed: {done.stderr.decode(errors='replace')[-500:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def slowest_imports(argv: list[str], env: dict[str, str], top: int = 8) -> list[str]:
    done = subprocess.run([sys.executable, "-X", "importtime", "-c",
                           "import sys; from intake.cli import main; main(sys.argv[1:])", *argv[1:]],
                          env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    rows = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or line.count("|") != 2:
            continue
        _, cumulative, name = line[len("import time:"):].split("|")
        # One leading space marks an import made by the script itself, not by another module.
        if cumulative.strip().isdigit() and not name.startswith("  "):
            rows.append((int(cumulative), name.strip()))
    return [f"{us / 1000:7.1f} ms  {name}" for us, name in sorted(rows, reverse=True)[:top]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--imports", action="store_true", help="print each command's slowest imports")
    parser.add_argument("--baseline", type=Path, default=None,
                        help="a source tree to measure the same commands from (before/after)")
    parser.add_argument("--postgresql", metavar="URL", default=None,
                        help="also `intake list` on an empty schema of this PostgreSQL database")
    args = parser.parse_args()

    schema = None
    if args.postgresql:
        from intake.migrate import upgrade
        from sqlalchemy import create_engine, text

        schema = f"cli_bench_{os.getpid()}"
        admin = create_engine(args.postgresql.replace("postgresql://", "postgresql+psycopg://", 1))
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        pg_url = f"{args.postgresql}?options=-csearch_path%3D{schema}"
        upgrade(pg_url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        run(args, pg_url if schema else None)
    finally:
        if schema:
            with admin.begin() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            admin.dispose()


def run(args: argparse.Namespace, pg_url: str | None) -> None:
    work = Path(tempfile.mkdtemp(prefix="intake-cli-bench-"))
    db_path = work / "intake.db"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "INTAKE_LOG_LEVEL")}
    env.update(DATABASE_URL=f"sqlite:///{db_path}", INTAKE_CONFIG="")
    todo = commands(db_path, args.baseline, pg_url)
    for argv in todo.values():  # warm-up: creates and migrates the database, writes bytecode
        timed(argv, env)
    walls: dict[str, list[float]] = {name: [] for name in todo}
    cpus: dict[str, list[float]] = {name: [] for name in todo}
    for _ in range(args.rounds):
        for name, argv in todo.items():
            wall, cpu = timed(argv, env)
            walls[name].append(wall)
            cpus[name].append(cpu)

    load = os.getloadavg()[0]
    print(f"{args.rounds} interleaved rounds, {os.cpu_count()} CPUs, load average {load:.1f} at the end")
    print(f"{'command':<32} {'median':>8} {'min':>8} {'cpu':>8}")
    for name in todo:
        print(f"{name:<32} {statistics.median(walls[name]) * 1000:6.0f}ms {min(walls[name]) * 1000:6.0f}ms "
              f"{statistics.median(cpus[name]) * 1000:6.0f}ms")
    if args.imports:
        for name in ("intake --help", "intake list (empty database)"):
            print(f"\nslowest imports of {name} (cumulative, -X importtime):")
            for line in slowest_imports(todo[name], env):
                print("  " + line)


if __name__ == "__main__":
    main()
