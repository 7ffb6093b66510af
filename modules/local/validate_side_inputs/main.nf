/*
 * Every side input of the run, read with the same code the steps use (known relationships,
 * gene-embedding tables, the gene-id map, foundation models' extra files), before any dataset work.
 */
process VALIDATE_SIDE_INPUTS {
    tag "side inputs"
    label 'process_single'

    input:
    path(relationships, stageAs: 'relationships/*')
    path(tables, stageAs: 'tables/?/*')
    path(id_map, stageAs: 'id_map/*')
    val(side_models)
    path(side_files, stageAs: 'side/?/*')

    output:
    path "side_inputs.valid.json", emit: json
    path "versions.yml"          , emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args   = task.ext.args ?: ''
    def rel    = relationships ? "--known-relationships ${relationships}" : ''
    def tab    = tables.collect { "--gene-embedding-table ${it}" }.join(' ')
    def idMap  = id_map ? "--gene-id-map ${id_map}" : ''
    def sides  = [side_models, side_files instanceof List ? side_files : [side_files]].transpose()
        .collect { model, f -> "--side-input ${model}=${f}" }.join(' ')
    """
    validate_side_inputs.py \\
        ${rel} ${tab} ${idMap} ${sides} \\
        --out side_inputs.valid.json \\
        --versions-yml versions.yml \\
        --task-process "${task.process}" \\
        ${args}
    """

    stub:
    """
    echo '{}' > side_inputs.valid.json
    printf '"%s":\\n    pertprobe: stub\\n' "${task.process}" > versions.yml
    """
}
