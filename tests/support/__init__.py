"""What the tests share that is not a test: paths, configs, the S3 test server's names, table
comparisons, sample builders, generated videos and corpora, the fault-injecting proxy."""
