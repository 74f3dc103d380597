;; Declares 1000 pages (62.5 MiB) of initial memory and does nothing with it.
(module
  (memory (export "memory") 1000)
  (func (export "_start")))
