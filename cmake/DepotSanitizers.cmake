# DEPOT_SANITIZE=ON: AddressSanitizer + UndefinedBehaviorSanitizer on everything (our targets,
# generated code and tests), compile and link. Any UBSan finding is fatal (no "recover"), so a
# test run cannot pass over one. Included from the top-level CMakeLists.txt before any target.
if(DEPOT_SANITIZE)
  set(DEPOT_SANITIZER_FLAGS -fsanitize=address,undefined -fno-omit-frame-pointer
                            -fno-sanitize-recover=all)
  add_compile_options(${DEPOT_SANITIZER_FLAGS})
  add_link_options(${DEPOT_SANITIZER_FLAGS})
  message(STATUS "depot: ASan + UBSan enabled")
endif()
