module rollbackdrill.local/runc-wrapper

go 1.24.0
