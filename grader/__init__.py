"""The course grader: `python -m grader SUBMISSION.py` (see README.md)."""
