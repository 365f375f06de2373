"""`samadapt serve`: a local web page to try trained adapters (see samadapt/app/serve.py)."""
