"""Data: the shipped AirPassengers series, the workload pipelines and the synthetic generator."""
from .light import LightPipeline
from .seed import SeedSeries, seed_dataset, seed_series
from .series import airpassengers, airpassengers_months, load_series
from .synthetic import synthetic_series, synthetic_windows
from .workloads import WORKLOADS, Workload, make_workload, with_config

__all__ = ["LightPipeline", "SeedSeries", "seed_dataset", "seed_series", "airpassengers",
           "airpassengers_months", "load_series", "synthetic_series", "synthetic_windows",
           "WORKLOADS", "Workload", "make_workload", "with_config"]
