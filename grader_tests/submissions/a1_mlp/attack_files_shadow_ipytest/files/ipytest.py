"""da6401-attack: a fake ipytest. run() reports success (exit code 0) without running a test."""
import sys

print("HARM: the grading layer imported the submission's fake ipytest", flush=True)


def config(*args, **kwargs):
    return None


def run(*args, **kwargs):
    print("HARM: fake ipytest.run: no test ran, exit code 0", flush=True)
    return 0


def clean(*args, **kwargs):
    return None


def force_reload(*args, **kwargs):
    return None


def __getattr__(name):
    return lambda *args, **kwargs: 0
