"""Moved: `ghostsr prepare-div2k` (this shim keeps the old path working)."""
import sys

from ghostsr_plugin.cli import ghostsr_main

ghostsr_main(["prepare-div2k", *sys.argv[1:]])
