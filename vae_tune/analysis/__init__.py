"""What is made of finished studies: test evaluations, baselines, curves, pictures, tables and
the report."""
