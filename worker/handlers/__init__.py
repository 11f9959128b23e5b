"""One module per job kind: a typed payload, pure logic, and a thin async handler."""
