"""Jobs that make training data: hard-negative mining now; query rewrites, CoT keywords and
teacher scores next. Each job is one module holding its config class and its run function."""
