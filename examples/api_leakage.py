"""Run a leakage audit from Python and print the depth curve.

    python examples/api_leakage.py            # audits the bundled CNN-4 on the embedded corpus
    python examples/api_leakage.py model.onnx --corpus my/manifest.csv
"""

from __future__ import annotations

import argparse

from ser_audit.api import ModelSource, leakage_audit
from ser_audit.report.writer import write_json


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model", nargs="?", default="zoo:cnn4")
    parser.add_argument("--corpus", default="synthetic")
    parser.add_argument("--out", default="ser-audit-report")
    args = parser.parse_args()

    report = leakage_audit(ModelSource(args.model), corpus=args.corpus, seed=0)
    for row in report.leakage.results:
        print(f"{row.layer:>14}  leakage {row.balanced_accuracy:.3f}  [{row.ci_low:.3f}, {row.ci_high:.3f}]  "
              f"chance {row.chance:.2f}  p {row.p_value:.3f}  adjusted p {row.p_value_adjusted:.3f}")
    print(report.leakage.recommendation.reason)
    print("written to", write_json(report, args.out))


if __name__ == "__main__":
    main()
