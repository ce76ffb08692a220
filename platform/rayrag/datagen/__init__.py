"""Jobs that make training data: hard-negative mining and query rewrites (DiSCo teachers) now; CoT keywords and
teacher scores next. Each job is one module holding its config class and its run function."""
