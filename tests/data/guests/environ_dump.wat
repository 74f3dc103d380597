;; Copies its whole environment (NAME=VALUE\0...) to stdout and exits with the number of
;; variables it saw (at most 125, the largest status WASI allows).
(module
  (import "wasi_snapshot_preview1" "environ_sizes_get"
    (func $environ_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_get" (func $environ_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  ;; count at 0, buffer size at 4; pointers from 4096, strings from 65536.
  (memory (export "memory") 4)
  (func (export "_start") (local $count i32)
    (drop (call $environ_sizes_get (i32.const 0) (i32.const 4)))
    (local.set $count (i32.load (i32.const 0)))
    (if (i32.and
          (i32.le_u (local.get $count) (i32.const 8192))
          (i32.le_u (i32.load (i32.const 4)) (i32.const 131072)))
      (then
        (drop (call $environ_get (i32.const 4096) (i32.const 65536)))
        (i32.store (i32.const 16) (i32.const 65536))
        (i32.store (i32.const 20) (i32.load (i32.const 4)))
        (drop (call $fd_write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 24)))))
    (if (i32.gt_u (local.get $count) (i32.const 125)) (then (local.set $count (i32.const 125))))
    (call $exit (local.get $count))))
