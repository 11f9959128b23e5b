"""Test support: real servers (moto, ganesha) and worker processes, started and cleaned up."""
