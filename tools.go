//go:build tools

// Package hubsync pins module dependencies that are not yet imported by code.

package hubsync
import (
 _ "github.com/spf13/cobra"
 _ "github.com/rs/zerolog"
 _ "github.com/go-resty/resty/v2"
 _ "github.com/fsnotify/fsnotify"
 _ "github.com/zalando/go-keyring"
 _ "go.etcd.io/bbolt"
 _ "go.yaml.in/yaml/v3"
 _ "github.com/vbauerster/mpb/v8"
 _ "github.com/coreos/go-systemd/v22/daemon"
 _ "github.com/prometheus/client_golang/prometheus"
 _ "golang.org/x/sys/cpu"
 _ "golang.org/x/sync/errgroup"
 _ "golang.org/x/term"
)
