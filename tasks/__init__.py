"""Declarative task specs (YAML), installed as the package `ncbench.task_specs`."""
