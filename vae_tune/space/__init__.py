"""Search spaces and what a study runs with: space files, samplers and pruners, stages,
the study's extras and the precedence of its options."""
