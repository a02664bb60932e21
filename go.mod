module github.com/azote/azote

go 1.26.8

require (
	go.etcd.io/bbolt v1.4.3
	golang.org/x/sys v0.50.0
)
