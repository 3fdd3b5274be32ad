"""Reproduction of the paper's MuJoCo tables: planner, resumable sweep, tables, plots, CLI."""
