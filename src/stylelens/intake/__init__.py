"""Intake: a catalog folder and its feed into product records; bytes into RGB, with typed errors."""
