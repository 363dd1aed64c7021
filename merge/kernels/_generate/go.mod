module github.com/hubsync/hubsync/merge/kernels/_generate

go 1.26.0
