;; Grows to 64 MiB (1024 pages), then fills 1 GiB from address 0, in a loop: every fill is out
;; of bounds. A fill must trap before writing anything; it must never write or loop past memory.
(module
  (memory (export "memory") 1)
  (func (export "_start")
    (drop (memory.grow (i32.const 1023)))
    (loop $fill
      (memory.fill (i32.const 0) (i32.const 0xAA) (i32.const 0x40000000))
      (br $fill))))
