# Included from tests/CMakeLists.txt: the libFuzzer entry point of identity_fuzz.cc under the main
# toolchain (g++; ASan+UBSan in the sanitizer build) with a replay main(), run over the committed seed
# corpus. The coverage-guided fuzzing itself is the standalone clang project in this directory.
add_executable(orthrus_identity_fuzz_replay
  ${CMAKE_CURRENT_LIST_DIR}/identity_fuzz.cc
  ${CMAKE_CURRENT_LIST_DIR}/replay_main.cc)
target_link_libraries(orthrus_identity_fuzz_replay PRIVATE orthrus_common)
target_compile_options(orthrus_identity_fuzz_replay PRIVATE ${ORTHRUS_WARNINGS})
add_test(NAME fuzz_identity_corpus_replay
         COMMAND orthrus_identity_fuzz_replay ${CMAKE_CURRENT_LIST_DIR}/corpus/identity)
set_tests_properties(fuzz_identity_corpus_replay PROPERTIES LABELS unit TIMEOUT 300)
