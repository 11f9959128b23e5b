"""The drain engine: receive into free slots, run, settle, lease, hand back, stop."""
