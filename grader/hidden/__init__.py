"""Hidden checks: their code and thresholds, kept out of the students' handout.

A check with `visibility="hidden"` whose code students must not read puts its function here,
in grader/hidden/ASSIGNMENT.py, and the spec refers to it as `run=Hidden("ASSIGNMENT",
"function")`. The handout builder (in the course's repository) leaves this folder out, so the handout's grader lists such
a check as "graded at submission" (report field `graded_at_submission`) instead of running it.
"""
