"""Release snapshots: the aggregated release as Parquet files plus a manifest (layout.py)."""
