;; One page of memory (64 KiB), and one `random_get` of 64 MiB (the host's cap) into it: the
;; request cannot fit, so it fails however the host handles it; the question is what the host
;; spends first.
(module
  (import "wasi_snapshot_preview1" "random_get" (func $random_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (call $exit (call $random_get (i32.const 0) (i32.const 0x4000000)))))
