"""Moved: `ghostsr prepare-benchmarks` (this shim keeps the old path working)."""
import sys

from ghostsr_plugin.cli import ghostsr_main

ghostsr_main(["prepare-benchmarks", *sys.argv[1:]])
