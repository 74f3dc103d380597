;; Asks `random_get` for more than it can hold, or for as much as it can, over and over. Its
;; memory is 16 MiB (256 pages). The mode is the first byte of argv[1]:
;;
;;   1  once, 64 MiB (four times its memory) at 0; exits with the errno, if it gets one
;;   2  once, 4 GiB - 1 bytes at 0; exits with the errno, if it gets one
;;   3  forever, its whole memory (16 MiB) at 0, ignoring errors
;;   4  grows to 64 MiB (exit 122 if it cannot), then forever 64 MiB at 0, ignoring errors:
;;      the largest request the host fills (64 MiB is its cap) that also fits
(module
  (import "wasi_snapshot_preview1" "args_sizes_get"
    (func $args_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_get" (func $args_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "random_get" (func $random_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 256)

  ;; The first byte of argv[1] (argc at 0, buffer size at 4, argv at 64, strings at 1024).
  (func $mode (result i32)
    (drop (call $args_sizes_get (i32.const 0) (i32.const 4)))
    (if (i32.ne (i32.load (i32.const 0)) (i32.const 2))
      (then (call $exit (i32.const 120))))
    (drop (call $args_get (i32.const 64) (i32.const 1024)))
    (i32.load8_u (i32.load (i32.const 68))))

  (func (export "_start") (local $mode i32)
    (local.set $mode (call $mode))
    (if (i32.eq (local.get $mode) (i32.const 0x31))
      (then (call $exit (call $random_get (i32.const 0) (i32.const 0x4000000)))))
    (if (i32.eq (local.get $mode) (i32.const 0x32))
      (then (call $exit (call $random_get (i32.const 0) (i32.const -1)))))
    (if (i32.eq (local.get $mode) (i32.const 0x33))
      (then (loop $whole
        (drop (call $random_get (i32.const 0) (i32.const 0x1000000)))
        (br $whole))))
    (if (i32.eq (local.get $mode) (i32.const 0x34))
      (then
        (if (i32.eq (memory.grow (i32.const 768)) (i32.const -1))
          (then (call $exit (i32.const 122))))
        (loop $over
          (drop (call $random_get (i32.const 0) (i32.const 0x4000000)))
          (br $over))))
    (call $exit (i32.const 121))))
