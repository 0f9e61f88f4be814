"""Statistics of leakage rows: inference, resampling, rows, multiplicity, verdicts, findings, breakdowns, calibration."""
