;; Grows linear memory one page at a time forever, ignoring failure (-1) and trying again.
;; Every successful grow writes one "." to stdout, so stdout's length is the number of pages
;; the guest actually got beyond its first.
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) ".")
  (func (export "_start")
    ;; iovec { buf = 16, len = 1 } at 0; nwritten at 8.
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 1))
    (loop $grow
      (if (i32.ne (memory.grow (i32.const 1)) (i32.const -1))
        (then
          (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
      (br $grow))))
