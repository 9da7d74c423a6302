package main

import (
	"bytes"
	"io"
	"net"
	"sync"
	"time"
)

// tcpEchoClients and tcpEchoMsg are TCP_ECHO_CLIENTS and TCP_ECHO_MSG in
// benches/compare.rs.
const (
	tcpEchoClients = 64
	tcpEchoMsg     = 64
)

// tcp_echo: an echo server on 127.0.0.1 (one goroutine per connection) and
// tcpEchoClients client goroutines, each doing n round trips of tcpEchoMsg
// bytes (write, then read the echo in full). TCP_NODELAY is Go's default.
// Connecting is included. ns/op = elapsed / (clients × n), per round trip.
func tcpEcho(n uint64) (time.Duration, uint64) {
	start := time.Now()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	addr := l.Addr().String()
	serverDone := make(chan struct{})
	go func() {
		defer close(serverDone)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn) {
				defer c.Close()
				buf := make([]byte, tcpEchoMsg)
				for {
					if _, err := io.ReadFull(c, buf); err != nil {
						return
					}
					if _, err := c.Write(buf); err != nil {
						return
					}
				}
			}(c)
		}
	}()
	var wg sync.WaitGroup
	for id := 0; id < tcpEchoClients; id++ {
		wg.Add(1)
		go func(id int) {
			defer wg.Done()
			c, err := net.Dial("tcp", addr)
			if err != nil {
				panic(err)
			}
			defer c.Close()
			msg := bytes.Repeat([]byte{byte(id)}, tcpEchoMsg)
			back := make([]byte, tcpEchoMsg)
			for i := uint64(0); i < n; i++ {
				msg[0] = byte(i)
				if _, err := c.Write(msg); err != nil {
					panic(err)
				}
				if _, err := io.ReadFull(c, back); err != nil {
					panic(err)
				}
				if !bytes.Equal(back, msg) {
					panic("tcp_echo: wrong echo")
				}
			}
		}(id)
	}
	wg.Wait()
	elapsed := time.Since(start)
	l.Close()
	<-serverDone
	return elapsed, tcpEchoClients * n
}

func init() {
	workloads["tcp_echo"] = workload{defaultN: 20000, run: tcpEcho}
}
