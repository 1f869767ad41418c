"""Writes ``what_if_budget.ipynb`` next to this file (the notebook is generated, so edit here and rerun).

    python examples/make_what_if_notebook.py
"""
from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

CELLS = [
    ("md", """# What if? Decline threshold and query budget against a query-limited attacker

A data scientist's study with **fraudsim**: how easily can a fraudster who can only query the fraud model get a
caught fraud through, and how does that change with

1. the **decline threshold** (set here as the false-positive rate the threshold is tuned to), and
2. the **query budget** the attacker gets?

Every run builds a small synthetic world (3,000 customers over 8 days), trains an XGBoost model on the first days,
and attacks 15 caught frauds from the later days with two black-box strategies. Each run writes one DuckDB file;
everything below is read from those files."""),
    ("code", """from pathlib import Path

import polars as pl

import simulator as fs
from simulator import report as rep  # plots, SQL views, comparisons, the HTML report

out = Path("what-if-runs")  # one DuckDB file per run, next to the notebook
out.mkdir(exist_ok=True)
base = fs.Scenario.from_dict({
    "name": "what-if",
    "seed": 5,
    "world": {"customers": 3000, "days": 8},
    "attack": {"limit": 15, "budget": 300, "strategies": ["random", "evolutionary"]},
})
print(base.to_yaml())"""),
    ("md", """## 1. The decline threshold

The baseline model declines a transaction when its score is at least the threshold. A stricter threshold (tuned to
a higher false-positive rate) catches more, but does it also hold against an attacker who probes it?
`Scenario.replace` gives a validated copy with one section changed."""),
    ("code", """runs = {}
for fpr in (0.002, 0.01, 0.05):
    sc = base.replace(name=f"fpr-{fpr}", model={"threshold_fpr": fpr})
    runs[f"FPR {fpr:.1%}"] = fs.run(sc, output=out / f"fpr-{fpr}.duckdb")
list(runs)"""),
    ("md", """Each run's summary (`res.summary()`), and the model's own numbers from the `model_performance` view (AUC,
false-positive rate and recall at the threshold, recomputed from the stored transactions)."""),
    ("code", """pl.concat([res.summary().select(pl.lit(label).alias("setting"), pl.all()) for label, res in runs.items()])"""),
    ("code", """pl.concat([
    rep.query(res, "SELECT threshold, auc, false_positive_rate, recall FROM model_performance WHERE split = 'test'")
      .select(pl.lit(label).alias("setting"), pl.all())
    for label, res in runs.items()
])"""),
    ("md", """The success-vs-budget curves of the three settings on one chart (for each budget N, the worst case over
the two strategies): all evasions first, then the cheap ones (cost ≤ 1)."""),
    ("code", """rep.curves(runs, title="Targets evaded within N queries, by decline threshold")"""),
    ("code", """rep.curves(runs, cheap=True, title="Cheap evasions (cost ≤ 1) within N queries")"""),
    ("md", """## 2. The query budget

No new run is needed: every query is logged, so the `success_by_budget` view reads the success rate at any budget
up to the one the run used. How many queries does an attacker need to get half of the targets through?"""),
    ("code", """res = runs["FPR 1.0%"]
curve = rep.success_by_budget(res)
curve.filter(pl.col("budget").is_in([1, 3, 10, 30, 100, 300])).pivot(
    on="strategy", index="budget", values="success_rate").sort("budget")"""),
    ("code", """(curve.filter(pl.col("success_rate") >= 0.5)
      .group_by("strategy").agg(pl.col("budget").min().alias("queries_for_half_the_targets")))"""),
    ("md", """The same run's pictures: the success curve per strategy, what the attackers changed, and what it cost
them."""),
    ("code", """res.plot.success_curve()"""),
    ("code", """res.plot.feature_heatmap()"""),
    ("code", """res.plot.cost_histogram()"""),
    ("md", """Plain SQL works on the tables too (`res.sql`), e.g. the targets that held out longest against the
better of the two strategies:"""),
    ("code", """res.sql(\"\"\"SELECT target_id, round(any_value(original_score), 4) AS original_score,
  min(queries_to_first_evasion) AS fewest_queries_to_evade, round(min(min_cost), 3) AS cheapest_evasion
FROM targets GROUP BY target_id ORDER BY fewest_queries_to_evade DESC NULLS FIRST LIMIT 5\"\"\")"""),
    ("md", """## Compare two settings, and write the report

`a.compare(b)` lines two runs up measure by measure (delta = B − A, and whether B is better or worse for the
defender); the HTML report is one self-contained file to attach to a model release."""),
    ("code", """(runs["FPR 0.2%"].compare(runs["FPR 5.0%"])
   .filter(pl.col("a").is_not_null() & (pl.col("strategy").is_null() | pl.col("measure").str.starts_with("success_rate_at")))
   .select("measure", "strategy", "a", "b", "delta", "verdict"))"""),
    ("code", """html = res.to_html(out / "report.html")
print(f"{out / 'report.html'}: {len(html) / 1024:.0f} KB")"""),
]


def build() -> nbformat.NotebookNode:
    cells = [new_markdown_cell(src) if kind == "md" else new_code_cell(src) for kind, src in CELLS]
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    return nb


if __name__ == "__main__":
    path = Path(__file__).with_name("what_if_budget.ipynb")
    nbformat.write(build(), path)
    print(f"wrote {path}")
