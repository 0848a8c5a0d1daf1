"""Load: bothub's Slack path under a steady stream of questions, beside a bare baseline.

`python -m benchmarks.load --help`; see benchmarks/README.md.
"""
