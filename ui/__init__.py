"""Presentation and wiring only: all logic lives in `alignez_core`."""
