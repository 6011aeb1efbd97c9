"""benchmarks/run_all.py (``make bench``): runs every script, survives failures, reports
absent datasets and stale results honestly."""

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUN_ALL = ROOT / "benchmarks" / "run_all.py"

OK = '''
import argparse, pathlib
p = argparse.ArgumentParser(); p.add_argument("--data-dir"); p.add_argument("--quick", action="store_true")
a = p.parse_args()
print(f"quick={a.quick} data={a.data_dir}")
print("pacs_photo_art absent: skipped the PACS rows")
out = pathlib.Path(__file__).parent / "results"
out.mkdir(exist_ok=True)
(out / "ok.md").write_text("## Frozen vs plain torch\\n\\n| model | ratio |\\n|---|---|\\n| a | 1.5 |\\n")
(out / "ok_curves.png").write_bytes(b"\\x89PNG fake")
'''
BAD = 'import sys\nprint("loading...")\nsys.exit("boom: the backbone broke")\n'
HANG = "import time\ntime.sleep(60)\n"


def _run(bench_dir, *args, env=None):
    return subprocess.run(
        [sys.executable, str(RUN_ALL), "--bench-dir", str(bench_dir), *args],
        capture_output=True, text=True, timeout=120, env=env,
    )


def test_run_all_collects_results_and_survives_failures(tmp_path):
    bench = tmp_path / "benchmarks"
    bench.mkdir()
    (bench / "bench_ok.py").write_text(OK)
    (bench / "bench_bad.py").write_text(BAD)
    (bench / "bench_hang.py").write_text(HANG)
    (bench / "results").mkdir()
    stale = bench / "results" / "bad.md"
    stale.write_text("| old | table |\n|---|---|\n| 1 | 2 |\n")
    os.utime(stale, (time.time() - 86400, time.time() - 86400))
    data = tmp_path / "data"
    (data / "hymenoptera").mkdir(parents=True)

    t0 = time.perf_counter()
    proc = _run(bench, "--quick", "--data-dir", str(data), "--timeout", "5")
    assert time.perf_counter() - t0 < 60  # the hanging script was killed
    assert proc.returncode == 1, proc.stdout + proc.stderr  # a script failed: CI notices
    assert "quick=True data=" + str(data) in proc.stdout  # options passed through

    report = (bench / "RESULTS.md").read_text()
    assert "| hymenoptera | found |" in report
    assert "| pacs_photo_art | **absent: skipped** |" in report
    assert "| bench_ok.py | ok |" in report
    assert "| bench_bad.py | FAILED (exit 1) |" in report
    assert "| bench_hang.py | timed out after 5 s |" in report
    assert "boom: the backbone broke" in report  # the failure's own words
    assert "pacs_photo_art absent: skipped the PACS rows" in report  # the script's skip line
    assert "##### Frozen vs plain torch" in report and "| a | 1.5 |" in report
    assert "![ok_curves](results/ok_curves.png)" in report
    assert "_Stale: `results/bad.md` was not rewritten by this run" in report
    assert (bench / "out" / "bad.log").read_text().startswith("loading...")


def test_run_all_without_data_dir_and_collect_only(tmp_path):
    bench = tmp_path / "benchmarks"
    bench.mkdir()
    (bench / "bench_ok.py").write_text(OK)
    env = {k: v for k, v in os.environ.items() if k != "TLE_DATA"}
    proc = _run(bench, "--data-dir", str(tmp_path / "nowhere"), env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = (bench / "RESULTS.md").read_text()
    assert report.count("**absent: skipped**") == 6  # every known dataset

    proc = _run(bench, "--collect-only", "--data-dir", str(tmp_path / "nowhere"), env=env)
    assert proc.returncode == 0
    report = (bench / "RESULTS.md").read_text()
    assert "| bench_ok.py | not run (--collect-only) |" in report
    assert "| a | 1.5 |" in report and "(not re-run now)" in report
