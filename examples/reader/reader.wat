;; A WASI preview 1 command that prints `in.txt` from its first preopened directory (fd 3),
;; and exits with the errno of opening it when it cannot (44: no such file; 8: no directory).
(module
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "in.txt")
  (func (export "_start") (local $err i32)
    ;; path_open(fd 3, no symlink follow, "in.txt", no create, rights: fd_read)
    (local.set $err (call $path_open (i32.const 3) (i32.const 0) (i32.const 100) (i32.const 6)
      (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 200)))
    (if (local.get $err) (then (call $exit (local.get $err))))
    ;; one read of up to 4 KiB into 8000, then one write of what was read to stdout
    (i32.store (i32.const 300) (i32.const 8000))
    (i32.store (i32.const 304) (i32.const 4096))
    (drop (call $fd_read (i32.load (i32.const 200)) (i32.const 300) (i32.const 1) (i32.const 400)))
    (i32.store (i32.const 304) (i32.load (i32.const 400)))
    (drop (call $fd_write (i32.const 1) (i32.const 300) (i32.const 1) (i32.const 400)))
    (call $exit (i32.const 0))))
