"""The use cases behind the public functions: a study, a promotion, a curve, the
report and listings, and the pipeline within its budget."""
