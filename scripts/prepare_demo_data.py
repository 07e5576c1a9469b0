"""Moved: `ghostsr prepare-demo` (this shim keeps the old path working)."""
import sys

from ghostsr_plugin.cli import ghostsr_main

ghostsr_main(["prepare-demo", *sys.argv[1:]])
