"""One module per `ghostsr` command."""
