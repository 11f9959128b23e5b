"""`spotdrain`, the operator's command: a queue's status, its dead letters and their redrive."""
