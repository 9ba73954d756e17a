;; A component written by hand in WebAssembly text that imports WASI, as
;; other toolchains' components do: it reads the monotonic clock, sleeps
;; SLEEP_NS nanoseconds on a pollable, reads the clock again (trapping if
;; less time passed), draws two random numbers (trapping if they are equal),
;; and then calls `exit` with STATUS (0: ok, 1: err), which never returns.
(component
  (import "wasi:io/poll@0.2.0" (instance $poll
    (export "pollable" (type (sub resource)))
    (export "[method]pollable.block" (func (param "self" (borrow 0))))))
  (alias export $poll "pollable" (type $pollable))
  (import "wasi:clocks/monotonic-clock@0.2.0" (instance $clock
    (alias outer 1 $pollable (type $p))
    (export "pollable" (type (eq $p)))
    (export "now" (func (result u64)))
    (export "subscribe-duration" (func (param "when" u64) (result (own 1))))))
  (import "wasi:random/random@0.2.0" (instance $random
    (export "get-random-u64" (func (result u64)))))
  (import "wasi:cli/exit@0.2.0" (instance $exit
    (export "exit" (func (param "status" (result))))))

  (core func $now (canon lower (func $clock "now")))
  (core func $subscribe (canon lower (func $clock "subscribe-duration")))
  (core func $block (canon lower (func $poll "[method]pollable.block")))
  (core func $drop (canon resource.drop $pollable))
  (core func $rand (canon lower (func $random "get-random-u64")))
  (core func $exit (canon lower (func $exit "exit")))

  (core module $m
    (import "imp" "now" (func $now (result i64)))
    (import "imp" "subscribe" (func $subscribe (param i64) (result i32)))
    (import "imp" "block" (func $block (param i32)))
    (import "imp" "drop" (func $drop (param i32)))
    (import "imp" "rand" (func $rand (result i64)))
    (import "imp" "exit" (func $exit (param i32)))
    (memory (export "memory") 1)
    (func (export "run") (result i32)
      (local $t0 i64) (local $p i32)
      (local.set $t0 (call $now))
      (local.set $p (call $subscribe (i64.const SLEEP_NS)))
      (call $block (local.get $p))
      (call $drop (local.get $p))
      (if (i64.lt_u (i64.sub (call $now) (local.get $t0)) (i64.const SLEEP_NS)) (then unreachable))
      (if (i64.eq (call $rand) (call $rand)) (then unreachable))
      (call $exit (i32.const STATUS))
      unreachable))
  (core instance $i (instantiate $m (with "imp" (instance
    (export "now" (func $now))
    (export "subscribe" (func $subscribe))
    (export "block" (func $block))
    (export "drop" (func $drop))
    (export "rand" (func $rand))
    (export "exit" (func $exit))))))
  (func (export "run") (result (result (error string)))
    (canon lift (core func $i "run") (memory (core memory $i "memory")))))
