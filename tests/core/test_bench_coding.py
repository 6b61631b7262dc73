"""bench/bench_coding.py runs and reports the writer's own rates (a small run)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_coding.py"


def test_bench_reports_the_writer_separately(tmp_path, capsys):
    sys.path.insert(0, str(BENCH.parent))
    try:
        spec = importlib.util.spec_from_file_location("bench_coding", BENCH)
        bench = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(bench)
        out = tmp_path / "coding.json"
        bench.main(["--n", "30000", "--repeat", "1", "--skip-general", "--payloads", "ar16",
                    "--out", str(out)])
    finally:
        sys.path.remove(str(BENCH.parent))
    res = json.loads(out.read_text())["payloads"]["ar16"]["results"]
    writer, search = res["writer"], res["ours_rans_ctx"]
    # the correlated stream: the writer keeps the context-modelled rANS stream
    assert writer["coding"] == "rans"
    assert writer["bytes"] == search["bytes"] < res["ours_huffman"]["bytes"]
    for key in ("encode_msym_s", "encode_msym_s_cpu", "decode_msym_s", "decode_msym_s_cpu"):
        assert writer[key] > 0
    table = capsys.readouterr().out
    assert "writer" in table and "enc (CPU)" in table
