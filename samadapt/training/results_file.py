"""The names of a run's results.json, apart from the callback that writes it: `samadapt compare` and `serve` read
them without loading torch or Lightning."""

RESULTS_FILE = "results.json"
RESULTS_FORMAT = "samadapt-results/1"
POOLED = "all"  # the name of every test split together in results.json
