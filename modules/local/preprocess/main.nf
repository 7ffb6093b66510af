process PREPROCESS {
    tag "${meta.id}"
    label 'process_medium'

    input:
    tuple val(meta), path(h5ad), path(validation)

    output:
    tuple val(meta), path("*.processed.h5ad")            , emit: h5ad
    tuple val(meta), path("*.pseudobulk.parquet")        , emit: pseudobulk
    tuple val(meta), path("*.pseudobulk_by_batch.parquet"), emit: pseudobulk_by_batch
    tuple val(meta), path("*.de.parquet")                , emit: de
    tuple val(meta), path("*.splits.csv")                , emit: splits
    tuple val(meta), path("*.summary.json")              , emit: summary
    tuple val(meta), path("*.label_resolution.csv")      , emit: resolution
    tuple val(meta), path("*.de_counts.csv")             , emit: de_counts
    path "versions.yml"                                  , emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args   = task.ext.args ?: ''
    def dataset_args = task.ext.args2 ?: ''  // the samplesheet row's columns (conf/modules.config)
    def prefix = task.ext.prefix ?: "${meta.id}"
    """
    preprocess.py \\
        --h5ad ${h5ad} \\
        --prefix ${prefix} \\
        ${dataset_args} \\
        --versions-yml versions.yml \\
        --task-process "${task.process}" \\
        ${args}
    """

    stub:
    def prefix = task.ext.prefix ?: "${meta.id}"
    """
    touch ${prefix}.processed.h5ad ${prefix}.pseudobulk.parquet ${prefix}.pseudobulk_by_batch.parquet ${prefix}.de.parquet
    printf 'task,seed,fold,perturbation,split\\nunseen_perturbation,0,0,stub,test\\n' > ${prefix}.splits.csv
    echo '{"stub": true}' > ${prefix}.summary.json
    printf 'perturbation,targets,measured_genes,resolved\\nstub,stub,stub,True\\n' > ${prefix}.label_resolution.csv
    printf 'perturbation,n_cells,n_tested,n_significant,n_de_genes\\nstub,0,0,0,0\\n' > ${prefix}.de_counts.csv
    printf '"%s":\\n    pertprobe: stub\\n' "${task.process}" > versions.yml
    """
}
