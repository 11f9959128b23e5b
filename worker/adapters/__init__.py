"""One module per outside service; service errors become the worker's errors here."""
