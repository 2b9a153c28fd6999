// Package docker holds the container build (Dockerfile), the compose setup that reproduces the
// original LocalStack environment (docker-compose.yaml) and LocalStack's init script. It has no
// code: its tests check those files statically, since no Docker engine is available to build or
// run them in CI.
package docker
