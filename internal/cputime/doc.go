// Package cputime reads the CPU time the current process has used, user
// and system together: what the benchmarks and the load generator report
// per operation beside wall-clock time, since on a machine whose cores
// are shared the two differ.
package cputime
